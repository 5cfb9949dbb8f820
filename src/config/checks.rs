//! `checks:`: what is probed on every node (http, https, tcp) and how the answer is judged.

use std::collections::HashMap;

use serde_saphyr::Spanned;

use super::ConfigError;
use super::file::{CheckEntry, StatusSpec, TimingSection};
use super::timing::Timing;
use super::validate::Validator;

/// Default HTTP body limit of checks: enough for a login page, small enough that a huge
/// response cannot eat memory.
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024;
/// The most of a body an HTTP check reads (a health page is small; more is a misconfiguration,
/// and every byte read is held against the probe's timeout).
pub const MAX_BODY_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub id: String,
    pub kind: CheckKind,
    pub timing: Timing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Http(HttpCheck),
    Tcp(TcpCheck),
}

impl CheckKind {
    /// The word the dashboard and logs use: http, https or tcp.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::Http(h) if h.https => "https",
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    pub https: bool,
    /// URL with `{address}` still in it; filled per node.
    pub url_template: String,
    /// Inclusive range of accepted status codes.
    pub expect_status: (u16, u16),
    pub expect_body: Option<String>,
    pub host_header: Option<String>,
    pub headers: Vec<(String, String)>,
    pub tls_verify: bool,
    pub body_limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpCheck {
    pub port: u16,
    /// A line sent after connecting (`\r\n` is appended).
    pub send: Option<String>,
    /// A substring the first bytes from the server must contain.
    pub expect: Option<String>,
}

impl Validator<'_> {
    /// The checks in the order written, and their ids' indexes.
    pub(super) fn checks(
        &self,
        checks: Vec<CheckEntry>,
        defaults: &Timing,
    ) -> Result<(Vec<Check>, HashMap<String, usize>), ConfigError> {
        if checks.is_empty() {
            return Err(self.plain_error("checks", "at least one check is needed"));
        }
        let mut check_ids: HashMap<String, usize> = HashMap::new();
        let mut folded_check_ids = HashMap::new();
        let mut built_checks = Vec::new();
        for (i, entry) in checks.into_iter().enumerate() {
            self.unique_ignoring_case(
                &entry.id,
                &format!("checks[{i}].id"),
                "check",
                &mut folded_check_ids,
            )?;
            let check = self.check(i, entry, defaults, &mut check_ids)?;
            built_checks.push(check);
        }
        Ok((built_checks, check_ids))
    }

    fn check(
        &self,
        i: usize,
        entry: CheckEntry,
        defaults: &Timing,
        ids: &mut HashMap<String, usize>,
    ) -> Result<Check, ConfigError> {
        let CheckEntry {
            id,
            kind,
            url,
            expect_status,
            expect_body,
            host,
            headers,
            tls_verify,
            body_limit,
            port,
            send,
            expect,
            interval,
            retry_interval,
            timeout,
            fall,
            rise,
        } = entry;
        let key = format!("checks[{i}]");
        if id.value.trim().is_empty() || id.value.contains(char::is_whitespace) {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!("`{}` is not a usable check id (no spaces)", id.value),
            ));
        }
        if ids.insert(id.value.clone(), i).is_some() {
            return Err(self.error(
                &id,
                format!("{key}.id"),
                format!(
                    "check id `{}` is used twice; check ids must be unique",
                    id.value
                ),
            ));
        }
        let timing_section = TimingSection {
            interval,
            retry_interval,
            timeout,
            fall,
            rise,
        };
        let timing = self.timing(defaults, &timing_section, &key)?;

        let type_name = kind.value.to_ascii_lowercase();
        let checks_kind = match type_name.as_str() {
            "http" | "https" => {
                let https = type_name == "https";
                for (name, present) in [
                    ("port", port.is_some()),
                    ("send", send.is_some()),
                    ("expect", expect.is_some()),
                ] {
                    if present {
                        return Err(self.error(&kind, format!("{key}.{name}"), format!("`{name}` applies to tcp checks only; http checks put the port in `url`")));
                    }
                }
                let url = url.ok_or_else(|| {
                    self.error(
                        &kind,
                        format!("{key}.url"),
                        "http checks need `url`, for example \"http://{address}/health\"",
                    )
                })?;
                let scheme = if https { "https://" } else { "http://" };
                if !url.value.starts_with(scheme) {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!(
                            "`{}` must start with {scheme} for a {type_name} check",
                            url.value
                        ),
                    ));
                }
                if !url.value.contains("{address}") {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!("`{}` has no {{address}}: the check would probe the same place for every node", url.value),
                    ));
                }
                let sample = url.value.replace("{address}", "192.0.2.1");
                if reqwest::Url::parse(&sample).is_err() {
                    return Err(self.error(
                        &url,
                        format!("{key}.url"),
                        format!("`{}` is not a valid URL", url.value),
                    ));
                }
                let expect_status = match expect_status {
                    None => (200, 399),
                    Some(spec) => self.status_range(&spec, &format!("{key}.expect_status"))?,
                };
                let mut header_list = Vec::new();
                for (name, value) in headers {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                        || reqwest::header::HeaderValue::from_str(&value).is_err()
                    {
                        return Err(self.error(
                            &id,
                            format!("{key}.headers.{name}"),
                            "is not a valid HTTP header name and value",
                        ));
                    }
                    header_list.push((name, value));
                }
                if let Some(h) = &host
                    && reqwest::header::HeaderValue::from_str(h).is_err()
                {
                    return Err(self.error(
                        &id,
                        format!("{key}.host"),
                        format!("`{h}` is not a valid Host header"),
                    ));
                }
                if let Some(limit) = &body_limit
                    && !(1..=MAX_BODY_LIMIT).contains(&limit.value)
                {
                    return Err(self.error(
                        limit,
                        format!("{key}.body_limit"),
                        format!(
                            "{} bytes is outside 1..={MAX_BODY_LIMIT} (16 MiB); a health page needs far less, the default is {DEFAULT_BODY_LIMIT}",
                            limit.value
                        ),
                    ));
                }
                CheckKind::Http(HttpCheck {
                    https,
                    url_template: url.value,
                    expect_status,
                    expect_body,
                    host_header: host,
                    headers: header_list,
                    tls_verify: tls_verify.unwrap_or(true),
                    body_limit: body_limit.map(|b| b.value).unwrap_or(DEFAULT_BODY_LIMIT),
                })
            }
            "tcp" | "telnet" => {
                for (name, present) in [
                    ("url", url.is_some()),
                    ("expect_status", expect_status.is_some()),
                    ("expect_body", expect_body.is_some()),
                    ("host", host.is_some()),
                    ("headers", !headers.is_empty()),
                    ("tls_verify", tls_verify.is_some()),
                    ("body_limit", body_limit.is_some()),
                ] {
                    if present {
                        return Err(self.error(
                            &kind,
                            format!("{key}.{name}"),
                            format!("`{name}` applies to http/https checks only"),
                        ));
                    }
                }
                let port = port.ok_or_else(|| {
                    self.error(&kind, format!("{key}.port"), "tcp checks need `port`")
                })?;
                if port.value == 0 {
                    return Err(self.error(
                        &port,
                        format!("{key}.port"),
                        "port 0 cannot be probed",
                    ));
                }
                CheckKind::Tcp(TcpCheck {
                    port: port.value,
                    send,
                    expect,
                })
            }
            other => {
                return Err(self.error(&kind, format!("{key}.type"), format!("`{other}` is not a check type; use http, https or tcp (telnet is an alias of tcp)")));
            }
        };
        Ok(Check {
            id: id.value,
            kind: checks_kind,
            timing,
        })
    }

    fn status_range(
        &self,
        spec: &Spanned<StatusSpec>,
        key: &str,
    ) -> Result<(u16, u16), ConfigError> {
        let bad = |text: String| {
            self.error(
                spec,
                key,
                format!(
                    "`{text}` is not a status or range of statuses (examples: 200, \"200-399\")"
                ),
            )
        };
        let (lo, hi) = match &spec.value {
            StatusSpec::Code(c) => (*c, *c),
            StatusSpec::Text(t) => match t.split_once('-') {
                Some((a, b)) => (
                    a.trim().parse().map_err(|_| bad(t.clone()))?,
                    b.trim().parse().map_err(|_| bad(t.clone()))?,
                ),
                None => {
                    let c = t.trim().parse().map_err(|_| bad(t.clone()))?;
                    (c, c)
                }
            },
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad(format!("{lo}-{hi}")));
        }
        Ok((lo, hi))
    }
}
