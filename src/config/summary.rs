//! The human summary `failoverd check-config` prints for a valid configuration.

use std::fmt::Write;

use super::{CheckKind, Config, NotifyConfig, SelfSource, format_duration};

impl Config {
    /// What the agent will do with this file: nodes, checks, hostnames and which node this is.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let zone = self.zone.to_ascii();
        let zone = zone.trim_end_matches('.');
        let _ = writeln!(out, "{}: valid", self.path.display());
        let _ = writeln!(out, "zone      {zone}");
        let this = match (self.self_id(), &self.self_source) {
            (Some(id), source) => {
                let what = if self.self_witness.is_some() {
                    "witness "
                } else {
                    ""
                };
                let from = if *source == SelfSource::Configured {
                    "from `self`"
                } else {
                    "found from this machine's addresses"
                };
                let role = if self.self_witness.is_some() {
                    "; probes and votes, serves no hostname, no nameserver of the zone"
                } else {
                    ""
                };
                format!("{what}{id} ({from}{role})")
            }
            (None, SelfSource::Ambiguous(ids)) => {
                format!(
                    "not set: several nodes' addresses are local ({}); set `self`",
                    ids.join(", ")
                )
            }
            (None, SelfSource::NotLooked) => {
                "not set, and not looked for among this machine's addresses".to_string()
            }
            (None, _) => "not set: no node address is on this machine; set `self`".to_string(),
        };
        let _ = writeln!(out, "this node {this}");
        let listen: Vec<String> = self.dns.listen.iter().map(|a| a.to_string()).collect();
        if self.dns.serve {
            let _ = writeln!(
                out,
                "dns       listen {} (UDP+TCP), ttl {}, NS ttl {}",
                listen.join(", "),
                format_duration(self.dns.ttl),
                format_duration(self.dns.ns_ttl)
            );
        } else if self.self_witness.is_some() && !self.dns.listen_written {
            let _ = writeln!(
                out,
                "dns       not served: a witness binds a DNS port only where dns.listen says so"
            );
        } else {
            let _ = writeln!(
                out,
                "dns       not served (serve: false): no DNS port is bound"
            );
        }
        if let Some(publish) = &self.publish {
            let _ = writeln!(out, "publish   {}", publish.describe());
        }
        let _ = writeln!(out, "dashboard {}", self.dashboard.listen);

        let _ = writeln!(out, "\nnodes ({}), best first:", self.nodes.len());
        for i in self.ranked_nodes() {
            let n = &self.nodes[i];
            let addrs: Vec<String> = n.addresses.iter().map(|a| a.to_string()).collect();
            let probe = if n.addresses.first() != Some(&n.probe_address) {
                format!(" (probed at {})", n.probe_address)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<12} priority {:<5} {}{probe}",
                n.id,
                n.priority,
                addrs.join(", ")
            );
        }

        let _ = writeln!(
            out,
            "\nchecks ({}), run against every node:",
            self.checks.len()
        );
        for c in &self.checks {
            let what = match &c.kind {
                CheckKind::Http(h) => {
                    let mut s = format!(
                        "{} expect {}-{}",
                        h.url_template, h.expect_status.0, h.expect_status.1
                    );
                    if let Some(body) = &h.expect_body {
                        let _ = write!(s, ", body contains {body:?}");
                    }
                    if !h.tls_verify {
                        s.push_str(", TLS not verified");
                    }
                    s
                }
                CheckKind::Tcp(t) => format!("port {}", t.port),
            };
            let t = &c.timing;
            let _ = writeln!(
                out,
                "  {:<12} {:<5} {what}\n  {:<12}       every {} (retry {}), timeout {}, fall {}, rise {}",
                c.id,
                c.kind.type_name(),
                "",
                format_duration(t.interval),
                format_duration(t.retry_interval),
                format_duration(t.timeout),
                t.fall,
                t.rise
            );
        }

        let _ = writeln!(out, "\nhostnames ({}):", self.hostnames.len());
        for h in &self.hostnames {
            let checks: Vec<&str> = h
                .checks
                .iter()
                .map(|&c| self.checks[c].id.as_str())
                .collect();
            let nodes: Vec<&str> = h.nodes.iter().map(|&n| self.nodes[n].id.as_str()).collect();
            let (mode, down) = (h.mode, h.when_all_down);
            let fqdn = h.fqdn.to_ascii();
            let _ = writeln!(
                out,
                "  {:<28} mode {mode}, when all down: {down}, checks [{}], nodes [{}]",
                fqdn.trim_end_matches('.'),
                checks.join(", "),
                nodes.join(", ")
            );
        }
        let _ = writeln!(out, "\nnameservers: {}", {
            let names: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("ns-{}.{zone}", n.id))
                .collect();
            names.join(", ")
        });
        out.push_str(&notify_summary(&self.notify));
        match &self.cluster {
            None => {
                let _ = writeln!(out, "cluster: none (this agent decides alone)");
            }
            Some(c) => {
                let quorum = c.quorum;
                let peers: Vec<String> = self
                    .peers()
                    .iter()
                    .map(|a| {
                        let what = if a.witness { "witness " } else { "" };
                        format!("{what}{} at {}", a.id, a.address)
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "cluster: listen {}, quorum {quorum}, pulls every {}, secret from ${}\n  peers: {}",
                    c.listen,
                    format_duration(c.period),
                    c.secret_env,
                    peers.join(", ")
                );
                if c.witnesses.is_empty() {
                    if self.nodes.len() == 2 && quorum == super::Quorum::Majority {
                        let _ = writeln!(
                            out,
                            "  witnesses: none; with two nodes a tie counts as down and a partition lets each decide alone (add one: cluster.witnesses)"
                        );
                    }
                } else {
                    let ws: Vec<String> = c
                        .witnesses
                        .iter()
                        .map(|w| format!("{} at {}", w.id, c.witness_addr(w)))
                        .collect();
                    let _ = writeln!(
                        out,
                        "  witnesses ({}): {}; they vote, serve no hostname and are no nameserver",
                        ws.len(),
                        ws.join(", ")
                    );
                    let agents = self.nodes.len() + c.witnesses.len();
                    if quorum == super::Quorum::Majority {
                        let _ = writeln!(
                            out,
                            "  a pair changes state when {} of the {agents} agents agree; short of that it keeps its state",
                            agents / 2 + 1
                        );
                    }
                }
            }
        }
        out.push_str(&super::secondaries::summary(self));
        out
    }
}

/// The `notify:` lines: where messages go and how, never a secret's value.
fn notify_summary(notify: &NotifyConfig) -> String {
    let mut out = String::new();
    if notify.is_empty() {
        let _ = writeln!(out, "\nnotify: none (no email or webhook configured)");
        return out;
    }
    let _ = writeln!(out, "\nnotify:");
    if let Some(e) = &notify.email {
        let s = &e.smtp;
        let auth = match (&s.username, &s.password) {
            (Some(u), Some(p)) => format!(", user {u}, {}", p.describe()),
            _ => String::new(),
        };
        let ca = match &s.ca {
            Some(ca) => format!(", trusting {}", ca.path.display()),
            None => String::new(),
        };
        let to: Vec<String> = e.to.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(
            out,
            "  email     {} -> {}\n            via {}:{} (tls: {}{ca}{auth})\n            events {}, digest window {}, retried for {}",
            e.from,
            to.join(", "),
            s.host,
            s.port,
            s.tls,
            e.events.names().join(", "),
            format_duration(e.digest_window),
            format_duration(e.retry_for)
        );
    }
    if let Some(w) = &notify.webhook {
        // A URL may carry a token in its path or query: show only scheme, host and port.
        let url = super::redacted_url(&w.url);
        let headers: Vec<&str> = w.headers.iter().map(|(k, _)| k.as_str()).collect();
        let _ = writeln!(
            out,
            "  webhook   POST {url}{}\n            events {}, retried for {}",
            if headers.is_empty() {
                String::new()
            } else {
                format!(" with headers {}", headers.join(", "))
            },
            w.events.names().join(", "),
            format_duration(w.retry_for)
        );
    }
    out
}
