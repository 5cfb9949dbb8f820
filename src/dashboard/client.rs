//! `failoverd status`: fetches `/api/v1/status` from the local agent and prints it as tables.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::url_authority;
use super::view::{StatusView, compact_duration, local_from_rfc3339};

/// How long `status` waits for the agent: it answers from memory, so this is generous.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Events shown under the tables; the page and the API have more.
const EVENTS_SHOWN: usize = 10;

/// Why `status` could not show anything. Every variant is a runtime failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("no agent answering on {target}: {reason} — is failoverd running?")]
    NotRunning { target: String, reason: String },
    #[error("the agent on {target} answered HTTP {status}: {body}")]
    Http {
        target: String,
        status: u16,
        body: String,
    },
    #[error("the agent on {target} sent a status this version cannot read: {reason}")]
    Parse { target: String, reason: String },
    #[error("`{0}` is not a URL such as http://127.0.0.1:81")]
    BadUrl(String),
}

/// The base URL of the dashboard configured at `listen`.
pub fn base_url(listen: SocketAddr) -> String {
    format!("http://{}", url_authority(listen))
}

/// An HTTP client for the local agent's API.
pub(crate) fn local_client() -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider (see check::http); plain HTTP needs
    // none, but building a client does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        // The agent is local: never go through $HTTP_PROXY.
        .no_proxy()
        .timeout(TIMEOUT)
        .user_agent(concat!("failoverd/", env!("CARGO_PKG_VERSION"), " (cli)"))
        // Plain HTTP to this machine: no CA roots, so it works without ca-certificates.
        .tls_certs_only([])
        .build()
}

/// Fetches the status from the dashboard at `base` (e.g. `http://127.0.0.1:81`).
/// Returns the parsed view and the JSON as sent.
pub async fn fetch(base: &str) -> Result<(StatusView, String), StatusError> {
    fetch_json(base, "/api/v1/status").await
}

/// GETs `path` (`/api/v1/status`, `/api/v1/history`) from the dashboard at `base`; returns it
/// parsed and the JSON sent, or why not in the operator's words.
pub async fn fetch_json<T: serde::de::DeserializeOwned>(
    base: &str,
    path: &str,
) -> Result<(T, String), StatusError> {
    let base = base.trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|_| StatusError::BadUrl(base.to_string()))?;
    let target = match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => return Err(StatusError::BadUrl(base.to_string())),
    };
    let client = local_client().map_err(|e| StatusError::NotRunning {
        target: target.clone(),
        reason: e.to_string(),
    })?;
    let not_running = |e: reqwest::Error| StatusError::NotRunning {
        target: target.clone(),
        reason: if e.is_timeout() {
            format!("no answer within {}s", TIMEOUT.as_secs())
        } else {
            crate::check::describe_error(&e)
        },
    };
    let response = client.get(url).send().await.map_err(not_running)?;
    let status = response.status();
    let body = response.text().await.map_err(not_running)?;
    if !status.is_success() {
        return Err(StatusError::Http {
            target,
            status: status.as_u16(),
            body: body.trim().chars().take(300).collect(),
        });
    }
    let view = serde_json::from_str(&body).map_err(|e| StatusError::Parse {
        target,
        reason: e.to_string(),
    })?;
    Ok((view, body))
}

/// The status as terminal tables: a header line, Current DNS, checks, recent events.
pub fn render(view: &StatusView, now: SystemTime) -> String {
    let mut out = String::new();
    let node = view.node.as_deref().unwrap_or("not set");
    out.push_str(&format!(
        "failoverd {} · zone {} · node {} · serial {} · up {}\n",
        view.version,
        view.zone,
        node,
        view.serial,
        compact_duration(Duration::from_secs(view.uptime_seconds))
    ));
    if !view.ready {
        out.push_str("NOT READY: the first round of checks is not done; DNS answers SERVFAIL\n");
    }

    out.push_str("\nCURRENT DNS\n");
    let mut rows = vec![row(["HOSTNAME", "ANSWER", "NODES", "MODE", "REASON"])];
    let mut notes: Vec<Vec<String>> = vec![Vec::new()];
    for h in &view.hostnames {
        let addresses: Vec<&str> =
            h.a.iter()
                .chain(h.aaaa.iter())
                .map(String::as_str)
                .collect();
        let answer = if addresses.is_empty() {
            "(no address)".to_string()
        } else {
            addresses.join(" ")
        };
        rows.push(vec![
            h.name.clone(),
            answer,
            h.nodes.join(","),
            h.mode.clone(),
            h.reason.clone(),
        ]);
        let mut lines = Vec::new();
        if h.reason != "healthy" {
            lines.push(h.reason_text.clone());
        }
        lines.extend(h.why.iter().cloned());
        notes.push(lines);
    }
    out.push_str(&table(&rows, &notes));

    out.push_str("\nCHECKS\n");
    let mut rows = vec![row([
        "PRIO",
        "NODE",
        "ADDRESS",
        "CHECK",
        "TYPE",
        "STATE",
        "SINCE",
        "LATENCY",
        "PASS/FAIL",
        "ERROR",
    ])];
    for p in &view.checks {
        rows.push(vec![
            p.priority.to_string(),
            p.node.clone(),
            p.addresses.join(","),
            p.check.clone(),
            p.kind.clone(),
            p.state.clone(),
            p.since
                .as_deref()
                .map(|s| local_from_rfc3339(s, now))
                .unwrap_or_else(|| "-".into()),
            p.latency_ms
                .map(|ms| format!("{ms:.1}ms"))
                .unwrap_or_else(|| "-".into()),
            format!(
                "{}/{} (rise {} fall {})",
                p.passes, p.failures, p.rise, p.fall
            ),
            p.error.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&table(&rows, &[]));

    let in_force: Vec<_> = view.overrides.iter().filter(|o| o.in_force).collect();
    if !in_force.is_empty() {
        out.push_str("\nMANUAL OVERRIDES\n");
        let mut rows = vec![row(["TARGET", "OVERRIDE", "UNTIL", "REASON", "BY"])];
        for o in in_force {
            rows.push(vec![
                o.target.clone(),
                match &o.node {
                    Some(n) => format!("forced to {n}"),
                    None => "maintenance".into(),
                },
                o.expires_at
                    .as_deref()
                    .map(|t| local_from_rfc3339(t, now))
                    .unwrap_or_else(|| "until cleared".into()),
                o.reason.clone(),
                o.by.clone(),
            ]);
        }
        out.push_str(&table(&rows, &[]));
    }

    if let Some(cluster) = &view.cluster {
        out.push_str(&format!("\nAGENTS (quorum {})\n", cluster.quorum));
        if cluster.alone && cluster.alone_keeps() {
            out.push_str(
                "ALONE: no other agent answers; without a majority of the agents (nodes and witnesses) every pair keeps its state\n",
            );
        } else if cluster.alone {
            out.push_str(
                "ALONE: no other agent answers; this agent decides on its own observations\n",
            );
        }
        if !cluster.witnesses.is_empty() {
            out.push_str(&format!("witnesses: {}\n", cluster.witnesses.join(", ")));
        }
        let mut rows = vec![row(["AGENT", "PEER API", "STATE", "LAST ANSWER", "ERROR"])];
        for p in &cluster.peers {
            rows.push(vec![
                p.agent.clone(),
                p.address.clone(),
                if p.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                }
                .into(),
                p.last_seen
                    .as_deref()
                    .map(|t| local_from_rfc3339(t, now))
                    .unwrap_or_else(|| "-".into()),
                p.error.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&table(&rows, &[]));
    }

    out.push_str("\nRECENT EVENTS\n");
    if view.events.is_empty() {
        out.push_str("  (none)\n");
    }
    for e in view.events.iter().take(EVENTS_SHOWN) {
        out.push_str(&format!(
            "  {}  {}\n",
            local_from_rfc3339(&e.at, now),
            e.summary
        ));
    }
    if view.events.len() > EVENTS_SHOWN {
        out.push_str(&format!(
            "  … {} older on the dashboard and in /api/v1/status\n",
            view.events.len() - EVENTS_SHOWN
        ));
    }
    out
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart; `notes[i]` are indented lines printed under row i.
fn table(rows: &[Vec<String>], notes: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::from("  ");
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = widths[c] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        for note in notes.get(i).into_iter().flatten() {
            out.push_str(&format!("      ↳ {note}\n"));
        }
    }
    out
}

/// Sends a manual override to the agent whose dashboard is at `base` (the CSRF token is read
/// from the agent first, as the dashboard's own forms carry it). Returns the override as the
/// agent recorded it, or why not.
pub async fn apply_override(
    base: &str,
    request: &crate::overrides::Request,
) -> Result<crate::overrides::Override, String> {
    let base = base.trim_end_matches('/');
    let client = local_client().map_err(|e| e.to_string())?;
    let target = base.trim_start_matches("http://").to_string();
    let unreachable = |e: reqwest::Error| {
        format!(
            "no agent answering on {target}: {} — is failoverd running?",
            crate::check::describe_error(&e)
        )
    };
    let token = client
        .get(format!("{base}/api/v1/csrf"))
        .send()
        .await
        .map_err(unreachable)?
        .text()
        .await
        .map_err(unreachable)?;
    let token: serde_json::Value = serde_json::from_str(&token)
        .map_err(|e| format!("unexpected answer from {target}: {e}"))?;
    let token = token["token"].as_str().unwrap_or_default().to_string();
    let response = client
        .post(format!("{base}/api/v1/overrides"))
        .header(super::actions::CSRF_HEADER, token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(request).map_err(|e| e.to_string())?)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(body.trim().to_string());
    }
    serde_json::from_str(&body).map_err(|e| format!("unexpected answer from {target}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_through_loopback() {
        assert_eq!(
            base_url("0.0.0.0:81".parse().unwrap()),
            "http://127.0.0.1:81"
        );
        assert_eq!(base_url("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            base_url("127.0.0.5:8081".parse().unwrap()),
            "http://127.0.0.5:8081"
        );
    }

    #[test]
    fn tables_align_columns_and_indent_notes() {
        let rows = vec![row(["A", "BB"]), row(["CCC", "D"])];
        let notes = vec![vec![], vec!["why".to_string()]];
        assert_eq!(table(&rows, &notes), "  A    BB\n  CCC  D\n      ↳ why\n");
    }

    #[tokio::test]
    async fn a_closed_port_says_no_agent_is_running() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = fetch(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no agent answering on 127.0.0.1:{port}: connection refused — is failoverd running?"
            )
        );
    }
}
