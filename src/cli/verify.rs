//! `failoverd verify`: asks every agent directly (and a resolver, if given) for the SOA, the NS
//! set and every hostname, and reports whether the delegation works and all nameservers agree.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use crate::config::Config;
use crate::dns::zone::nameserver_name;

/// How long to wait for one answer, and how many times to ask.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_TRIES: usize = 2;

/// What one server said to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Answer {
        rcode: ResponseCode,
        authoritative: bool,
        data: Vec<String>,
    },
    NoReply(String),
}

impl Reply {
    fn cell(&self) -> String {
        match self {
            Reply::NoReply(why) => format!("no reply ({why})"),
            Reply::Answer { rcode, data, .. } if *rcode != ResponseCode::NoError => {
                rcode.to_string()
            }
            Reply::Answer { data, .. } if data.is_empty() => "(none)".into(),
            Reply::Answer { data, .. } => data.join(" "),
        }
    }

    /// What must be equal between servers: the rcode and the data (as a set: resolvers may
    /// rotate the order).
    fn essence(&self) -> Option<(u16, BTreeSet<String>)> {
        match self {
            Reply::Answer { rcode, data, .. } => {
                Some((u16::from(*rcode), data.iter().cloned().collect()))
            }
            Reply::NoReply(_) => None,
        }
    }
}

/// Sends one query over UDP and waits (bounded) for the answer with the same id.
pub async fn ask(server: SocketAddr, name: &Name, qtype: RecordType, recursion: bool) -> Reply {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("valid");
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return Reply::NoReply(e.to_string()),
    };
    let mut last_error = String::from("timeout");
    for attempt in 0..QUERY_TRIES {
        let id: u16 = rand::random();
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(name.clone(), qtype));
        query.metadata.recursion_desired = recursion;
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        query.set_edns(edns);
        let bytes = match query.to_vec() {
            Ok(b) => b,
            Err(e) => return Reply::NoReply(e.to_string()),
        };
        if let Err(e) = socket.send_to(&bytes, server).await {
            last_error = crate::check::io_words(&e)
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                Err(_) => {
                    last_error = format!(
                        "timeout after {}s, {} tries",
                        QUERY_TIMEOUT.as_secs(),
                        attempt + 1
                    );
                    break;
                }
                Ok(Err(e)) => {
                    last_error = crate::check::io_words(&e)
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string());
                    break;
                }
                Ok(Ok((n, from))) if from == server => {
                    let Ok(message) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    if message.metadata.id != id {
                        continue;
                    }
                    let data = message
                        .answers
                        .iter()
                        .filter(|r| r.record_type() == qtype)
                        .map(|r| match &r.data {
                            RData::A(a) => a.0.to_string(),
                            RData::AAAA(a) => a.0.to_string(),
                            RData::NS(ns) => ns.0.to_ascii().trim_end_matches('.').to_string(),
                            RData::SOA(soa) => soa.serial.to_string(),
                            other => other.to_string(),
                        })
                        .collect();
                    return Reply::Answer {
                        rcode: message.metadata.response_code,
                        authoritative: message.metadata.authoritative,
                        data,
                    };
                }
                Ok(Ok(_)) => continue,
            }
        }
    }
    Reply::NoReply(last_error)
}

/// The address verify uses to reach each agent: the node's first published address, on the
/// port of the first `dns.listen` entry (the same on every node, as the config is shared).
pub fn agent_addresses(config: &Config) -> Vec<SocketAddr> {
    let port = config.dns.listen.first().map(|a| a.port()).unwrap_or(53);
    config
        .nodes
        .iter()
        .map(|n| SocketAddr::new(n.addresses[0], port))
        .collect()
}

/// Runs every query against every agent (and the resolver) and renders the report.
/// Returns the text and whether everything works and agrees.
pub async fn verify(config: &Config, resolver: Option<SocketAddr>) -> (String, bool) {
    let agents = agent_addresses(config);
    let zone = config.zone.clone();
    let mut questions: Vec<(Name, RecordType)> = vec![
        (zone.clone(), RecordType::SOA),
        (zone.clone(), RecordType::NS),
    ];
    for h in &config.hostnames {
        questions.push((h.fqdn.clone(), RecordType::A));
        questions.push((h.fqdn.clone(), RecordType::AAAA));
    }
    let expected_ns: BTreeSet<String> = (0..config.nodes.len())
        .map(|n| {
            nameserver_name(config, n)
                .to_ascii()
                .trim_end_matches('.')
                .to_string()
        })
        .collect();

    let mut columns: Vec<String> = config
        .nodes
        .iter()
        .zip(&agents)
        .map(|(n, a)| format!("{} {}", n.id, a))
        .collect();
    if let Some(r) = resolver {
        columns.push(format!("resolver {r}"));
    }
    let mut rows: Vec<(String, Vec<String>, String)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    // An agent that does not answer the first question is not asked the others (each would
    // wait out the timeout again); its cells say so.
    let mut unreachable: Vec<Option<String>> = vec![None; agents.len()];
    // Serials agree a few pull periods after a change: a mismatch is asked again once after that.
    let settle = config
        .cluster
        .as_ref()
        .map(|c| c.period * 3 + Duration::from_secs(1))
        .unwrap_or(Duration::from_secs(1));
    for (name, qtype) in &questions {
        let mut replies = Vec::new();
        for (i, agent) in agents.iter().enumerate() {
            let reply = match &unreachable[i] {
                Some(why) => Reply::NoReply(why.clone()),
                None => ask(*agent, name, *qtype, false).await,
            };
            if let Reply::NoReply(why) = &reply
                && unreachable[i].is_none()
            {
                unreachable[i] = Some(why.clone());
                let who = &config.nodes[i].id;
                problems.push(format!(
                    "{who}: no reply from {agent} ({why}); not asked further"
                ));
            }
            replies.push(reply);
        }
        if *qtype == RecordType::SOA
            && replies
                .iter()
                .filter_map(Reply::essence)
                .collect::<BTreeSet<_>>()
                .len()
                > 1
        {
            tokio::time::sleep(settle).await;
            for (i, agent) in agents.iter().enumerate() {
                if unreachable[i].is_none() {
                    replies[i] = ask(*agent, name, *qtype, false).await;
                }
            }
        }
        let resolved = match resolver {
            Some(r) => Some(ask(r, name, *qtype, true).await),
            None => None,
        };
        let label = format!("{} {qtype}", name.to_ascii().trim_end_matches('.'));
        let mut verdict = "agree".to_string();
        for (i, reply) in replies.iter().enumerate() {
            let who = &config.nodes[i].id;
            match reply {
                Reply::NoReply(_) => {}
                Reply::Answer {
                    authoritative: false,
                    ..
                } => problems.push(format!(
                    "{who}: answer to {label} is not authoritative (no aa flag)"
                )),
                Reply::Answer { rcode, .. } if *rcode != ResponseCode::NoError => {
                    problems.push(format!("{who}: {label} answered {rcode}"))
                }
                _ => {}
            }
            if *qtype == RecordType::NS
                && let Some((_, set)) = reply.essence()
                && set != expected_ns
            {
                problems.push(format!(
                    "{who}: NS set {set:?} is not the expected {expected_ns:?}"
                ));
            }
        }
        // Every agent serves the same serial for the same content (a secondary or a
        // serial-sync monitor compares them); a resolver may have an older SOA cached, so
        // only its answer's presence is compared.
        let essences: BTreeSet<_> = replies.iter().filter_map(Reply::essence).collect();
        if essences.len() > 1 {
            verdict = "DISAGREE".into();
            if *qtype == RecordType::SOA {
                let serials: Vec<String> = replies
                    .iter()
                    .zip(&config.nodes)
                    .filter(|(r, _)| r.essence().is_some())
                    .map(|(r, n)| format!("{} {}", n.id, r.cell()))
                    .collect();
                problems.push(format!(
                    "agents serve different SOA serials ({}), also when asked again {} later; \
                     every agent should serve the same serial for the same answers \
                     (are they all of this version, with the same configuration, and do they \
                     reach each other's peer API?)",
                    serials.join(", "),
                    crate::config::format_duration(settle)
                ));
            } else {
                problems.push(format!("agents disagree on {label}"));
            }
        }
        if let Some(r) = &resolved {
            if *qtype == RecordType::SOA {
                if r.essence().is_none() {
                    verdict = if verdict == "agree" {
                        "RESOLVER DIFFERS".into()
                    } else {
                        verdict
                    };
                    problems.push(format!(
                        "the resolver does not answer {label} ({})",
                        r.cell()
                    ));
                }
            } else {
                let agents_say = replies.iter().find_map(Reply::essence);
                if r.essence().is_none() || (agents_say.is_some() && r.essence() != agents_say) {
                    verdict = if verdict == "agree" {
                        "RESOLVER DIFFERS".into()
                    } else {
                        verdict
                    };
                    problems.push(format!(
                        "the resolver's answer to {label} differs from the agents' ({})",
                        r.cell()
                    ));
                }
            }
        }
        let mut cells: Vec<String> = replies.iter().map(Reply::cell).collect();
        if let Some(r) = &resolved {
            cells.push(r.cell());
        }
        rows.push((label, cells, verdict));
    }
    let ok = problems.is_empty();

    let mut out = String::new();
    let zone_text = zone.to_ascii();
    let _ = writeln!(
        out,
        "failoverd verify: zone {}, {} agent(s)\n",
        zone_text.trim_end_matches('.'),
        agents.len()
    );
    let first = rows.iter().map(|r| r.0.len()).max().unwrap_or(10).max(8);
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.1[c].len())
                .chain([columns[c].len()])
                .max()
                .unwrap_or(8)
        })
        .collect();
    let _ = write!(out, "{:<first$}", "question");
    for (c, w) in columns.iter().zip(&widths) {
        let _ = write!(out, "  {c:<w$}");
    }
    let _ = writeln!(out, "  verdict");
    for (label, cells, verdict) in &rows {
        let _ = write!(out, "{label:<first$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:<w$}");
        }
        let _ = writeln!(out, "  {verdict}");
    }
    let _ = writeln!(out);
    if ok {
        let via = resolver
            .map(|r| format!("; the delegation works through {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "OK: all {} agents answer authoritatively and agree{via}",
            agents.len()
        );
    } else {
        for p in &problems {
            let _ = writeln!(out, "PROBLEM: {p}");
        }
    }
    (out, ok)
}

/// Parses `--server` as `ADDR` or `ADDR:PORT` (port 53 by default).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = SocketAddr::from_str(text) {
        return Ok(addr);
    }
    IpAddr::from_str(text.trim_start_matches('[').trim_end_matches(']'))
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "`{text}` is not an address or address:port (examples: 192.0.2.53, 127.0.0.1:5353)"
            )
        })
}
