//! The validated `notify:` section (email over SMTP, webhook) and the secrets it points to.
//!
//! Passwords are never part of the file: `password_env` / `password_file` name where the secret
//! lives, and [`SecretSource::resolve`] reads it when the agent starts, so `check-config` can run
//! where the secret is not available. A [`Secret`] never prints its value.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde_saphyr::Spanned;

use super::file::{EmailSection, NotifySection, SmtpSection, WebhookSection};
use super::validate::Validator;
use super::{ConfigError, HumanDuration, format_duration};

/// Default time window that groups a burst of events into one digest message.
pub const DEFAULT_DIGEST_WINDOW: Duration = Duration::from_secs(10);
/// Default time a failed delivery keeps being retried before it is dropped.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(10 * 60);
/// Default limit of one SMTP conversation or webhook POST.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest digest window accepted: a longer one would hide a failover for too long.
const MAX_DIGEST_WINDOW: Duration = Duration::from_secs(3600);
/// The longest retry time accepted: a message older than a day is not news any more.
const MAX_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

/// Where notifications go. Empty when the file has no `notify:` section.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    pub email: Option<EmailConfig>,
    pub webhook: Option<WebhookConfig>,
}

impl NotifyConfig {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.webhook.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp: SmtpConfig,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub events: EventFilter,
    /// Events within this time of the first one go out as one message; zero sends each alone.
    pub digest_window: Duration,
    /// How long a failed send is retried (with backoff) before it is dropped.
    pub retry_for: Duration,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Where the password is; read at start by [`SecretSource::resolve`].
    pub password: Option<SecretSource>,
    /// Limit of one delivery attempt, from connect to QUIT.
    pub timeout: Duration,
    /// Extra trusted roots for the server's certificate (an internal CA), beside the system's.
    pub ca: Option<CaFile>,
}

/// A PEM file of one or more CA certificates, read and checked when the configuration loads.
#[derive(Debug, Clone)]
pub struct CaFile {
    pub path: PathBuf,
    pub certificate: lettre::transport::smtp::client::Certificate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: for a relay on the same machine or network segment only.
    None,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    Starttls,
    /// Implicit TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

impl SmtpTls {
    pub fn name(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

#[derive(Clone)]
pub struct WebhookConfig {
    pub url: reqwest::Url,
    /// Extra request headers, such as an Authorization token.
    pub headers: Vec<(String, String)>,
    pub events: EventFilter,
    pub retry_for: Duration,
    pub timeout: Duration,
}

// Header values often carry tokens: Debug shows only their names.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_str())
            .field("headers", &names)
            .field("events", &self.events)
            .field("retry_for", &self.retry_for)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Which kinds of event a channel receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFilter {
    pub check_down: bool,
    pub check_up: bool,
    pub answer_changed: bool,
    pub publish_failed: bool,
    pub override_changed: bool,
}

impl EventFilter {
    /// The names used in `events:`, which are also the webhook's `kind` values.
    pub const NAMES: [&'static str; 5] = [
        "check_down",
        "check_up",
        "answer_changed",
        "publish_failed",
        "override_changed",
    ];

    pub const ALL: EventFilter = EventFilter {
        check_down: true,
        check_up: true,
        answer_changed: true,
        publish_failed: true,
        override_changed: true,
    };

    /// The selected names, for the summary.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.check_down,
            self.check_up,
            self.answer_changed,
            self.publish_failed,
            self.override_changed,
        ];
        Self::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Where a secret is kept, and where the file says so (for errors at start).
#[derive(Debug, Clone)]
pub struct SecretSource {
    pub kind: SecretKind,
    /// The configuration file, for messages.
    pub file: String,
    pub location: Option<(u64, u64)>,
    /// Key path, e.g. `notify.email.smtp.password_env`.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKind {
    /// The name of an environment variable.
    Env(String),
    /// A file whose content (without the trailing newline) is the secret; relative paths are
    /// resolved against the configuration file's directory.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now. The error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        let error = |message: String| ConfigError {
            file: self.file.clone(),
            location: self.location,
            key: self.key.clone(),
            message,
            snippet: None,
        };
        let value = match &self.kind {
            SecretKind::Env(name) => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(error(format!(
                        "environment variable `{name}` is not set; export it before starting failoverd (with systemd: Environment= or EnvironmentFile=), or use password_file"
                    )));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(error(format!(
                        "environment variable `{name}` is not valid UTF-8"
                    )));
                }
            },
            SecretKind::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    error(format!(
                        "cannot read the password file `{}`: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        if value.is_empty() {
            let what = match &self.kind {
                SecretKind::Env(name) => format!("environment variable `{name}`"),
                SecretKind::File(path) => format!("password file `{}`", path.display()),
            };
            return Err(error(format!("{what} is empty")));
        }
        Ok(Secret(value))
    }

    /// Where the secret comes from, in words (for the summary).
    pub fn describe(&self) -> String {
        match &self.kind {
            SecretKind::Env(name) => format!("password from ${name}"),
            SecretKind::File(path) => format!("password from {}", path.display()),
        }
    }
}

/// A secret value that never shows itself in logs, Debug output or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that hands it to the SMTP client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Validator<'_> {
    pub(super) fn notify(
        &self,
        notify: Option<NotifySection>,
        config_dir: &Path,
    ) -> Result<NotifyConfig, ConfigError> {
        let Some(NotifySection { email, webhook }) = notify else {
            return Ok(NotifyConfig::default());
        };
        Ok(NotifyConfig {
            email: email.map(|e| self.email(e, config_dir)).transpose()?,
            webhook: webhook.map(|w| self.webhook(w)).transpose()?,
        })
    }

    fn email(&self, email: EmailSection, config_dir: &Path) -> Result<EmailConfig, ConfigError> {
        let EmailSection {
            smtp,
            from,
            to,
            events,
            digest_window,
            retry_for,
        } = email;
        let smtp = self.smtp(smtp, config_dir)?;
        let from = self.mailbox(&from, "notify.email.from")?;
        if to.value.is_empty() {
            return Err(self.error(
                &to,
                "notify.email.to",
                "is empty; give at least one recipient address",
            ));
        }
        let to = to
            .value
            .iter()
            .enumerate()
            .map(|(i, addr)| self.mailbox(addr, &format!("notify.email.to[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let events = self.event_filter(events.as_ref(), "notify.email.events")?;
        let digest_window = self.bounded_duration(
            digest_window.as_ref(),
            "notify.email.digest_window",
            DEFAULT_DIGEST_WINDOW,
            Duration::ZERO,
            MAX_DIGEST_WINDOW,
        )?;
        let retry_for = self.bounded_duration(
            retry_for.as_ref(),
            "notify.email.retry_for",
            DEFAULT_RETRY_FOR,
            Duration::ZERO,
            MAX_RETRY_FOR,
        )?;
        Ok(EmailConfig {
            smtp,
            from,
            to,
            events,
            digest_window,
            retry_for,
        })
    }

    fn smtp(&self, smtp: SmtpSection, config_dir: &Path) -> Result<SmtpConfig, ConfigError> {
        let SmtpSection {
            host,
            port,
            tls,
            username,
            password_env,
            password_file,
            password,
            timeout,
            ca_file,
        } = smtp;
        const KEY: &str = "notify.email.smtp";
        if let Some(p) = &password {
            // No snippet: the line holds the password itself.
            let mut e = self.error(
                p,
                format!("{KEY}.password"),
                "a password is never written in the configuration file; put it in an environment variable (password_env) or a file readable only by failoverd (password_file)",
            );
            e.snippet = None;
            return Err(e);
        }
        let host_value = host
            .value
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host_value.is_empty() || host_value.contains(char::is_whitespace) {
            return Err(self.error(
                &host,
                format!("{KEY}.host"),
                format!(
                    "`{}` is not a host name or address (example: smtp.example.com)",
                    host.value
                ),
            ));
        }
        let tls_value = match tls.as_ref().map(|t| t.value.as_str()) {
            None | Some("starttls") => SmtpTls::Starttls,
            Some("none") => SmtpTls::None,
            Some("tls") => SmtpTls::Tls,
            Some(other) => {
                return Err(self.error(
                    tls.as_ref().expect("present"),
                    format!("{KEY}.tls"),
                    format!("`{other}` is not one of none, starttls, tls"),
                ));
            }
        };
        let port_value = match &port {
            Some(p) if p.value == 0 => {
                return Err(self.error(p, format!("{KEY}.port"), "0 is not a port"));
            }
            Some(p) => p.value,
            None => tls_value.default_port(),
        };
        let password = match (password_env, password_file) {
            (Some(_), Some(f)) => {
                return Err(self.error(
                    &f,
                    format!("{KEY}.password_file"),
                    "give either password_env or password_file, not both",
                ));
            }
            (Some(env), None) => {
                let name = env.value.trim();
                let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && name.chars().next().is_some_and(|c| !c.is_ascii_digit());
                if !valid {
                    return Err(self.error(
                        &env,
                        format!("{KEY}.password_env"),
                        format!(
                            "`{}` is not an environment variable name: use letters, digits and _, not starting with a digit (example: FAILOVERD_SMTP_PASSWORD)",
                            env.value
                        ),
                    ));
                }
                Some(self.secret_source(&env, "password_env", SecretKind::Env(name.into())))
            }
            (None, Some(file)) => {
                if file.value.trim().is_empty() {
                    return Err(self.error(
                        &file,
                        format!("{KEY}.password_file"),
                        "is empty; give the path of a file holding the password",
                    ));
                }
                let path = config_dir.join(file.value.trim());
                Some(self.secret_source(&file, "password_file", SecretKind::File(path)))
            }
            (None, None) => None,
        };
        let username = match (username, &password) {
            (Some(u), None) => {
                return Err(self.error(
                    &u,
                    format!("{KEY}.username"),
                    format!(
                        "user `{}` needs a password: add password_env or password_file",
                        u.value
                    ),
                ));
            }
            (None, Some(p)) => {
                return Err(ConfigError {
                    file: self.file.clone(),
                    location: p.location,
                    key: p.key.clone(),
                    message: "a password needs a username: add `username`".into(),
                    snippet: None,
                });
            }
            (Some(u), Some(_)) => {
                let loopback = host_value == "localhost"
                    || host_value
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if tls_value == SmtpTls::None && !loopback {
                    return Err(self.error(
                        &u,
                        format!("{KEY}.username"),
                        format!(
                            "tls: none would send the password in clear text to {host_value}; use tls: starttls or tls: tls"
                        ),
                    ));
                }
                Some(u.value)
            }
            (None, None) => None,
        };
        let timeout = self.bounded_duration(
            timeout.as_ref(),
            &format!("{KEY}.timeout"),
            DEFAULT_SEND_TIMEOUT,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )?;
        let ca = match ca_file {
            None => None,
            Some(_) if tls_value == SmtpTls::None => {
                return Err(self.error(
                    ca_file.as_ref().expect("present"),
                    format!("{KEY}.ca_file"),
                    "tls: none never checks a certificate; use tls: starttls or tls: tls, or remove ca_file",
                ));
            }
            Some(file) => Some(self.ca_file(&file, config_dir)?),
        };
        Ok(SmtpConfig {
            host: host_value.to_string(),
            port: port_value,
            tls: tls_value,
            username,
            password,
            timeout,
            ca,
        })
    }

    /// Reads `ca_file` now, so `check-config` catches a missing or wrong file.
    fn ca_file(&self, file: &Spanned<String>, config_dir: &Path) -> Result<CaFile, ConfigError> {
        let key = "notify.email.smtp.ca_file";
        let path = config_dir.join(file.value.trim());
        let pem = std::fs::read(&path)
            .map_err(|e| self.error(file, key, format!("cannot read `{}`: {e}", path.display())))?;
        let not_pem = || {
            self.error(
                file,
                key,
                format!(
                    "`{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA that signed the SMTP server's certificate",
                    path.display()
                ),
            )
        };
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(not_pem());
        }
        let certificate =
            lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|_| not_pem())?;
        Ok(CaFile { path, certificate })
    }

    fn secret_source<T>(&self, span: &Spanned<T>, name: &str, kind: SecretKind) -> SecretSource {
        let (line, column) = (span.referenced.line(), span.referenced.column());
        SecretSource {
            kind,
            file: self.file.clone(),
            location: (line > 0).then_some((line, column)),
            key: format!("notify.email.smtp.{name}"),
        }
    }

    fn webhook(&self, webhook: WebhookSection) -> Result<WebhookConfig, ConfigError> {
        let WebhookSection {
            url,
            headers,
            events,
            retry_for,
            timeout,
        } = webhook;
        let parsed = reqwest::Url::parse(url.value.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                self.error(
                    &url,
                    "notify.webhook.url",
                    format!(
                        "`{}` is not an http:// or https:// URL (example: https://chat.example.com/hooks/failoverd)",
                        url.value
                    ),
                )
            })?;
        let mut out = Vec::new();
        for (name, value) in headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.plain_error(
                    format!("notify.webhook.headers.{name}"),
                    format!("`{name}` is not a valid HTTP header name"),
                ));
            }
            // The value is not repeated: it is often a token.
            if reqwest::header::HeaderValue::from_str(&value).is_err() {
                return Err(self.plain_error(
                    format!("notify.webhook.headers.{name}"),
                    "the value is not a valid HTTP header value (no line breaks or control characters)",
                ));
            }
            out.push((name, value));
        }
        Ok(WebhookConfig {
            url: parsed,
            headers: out,
            events: self.event_filter(events.as_ref(), "notify.webhook.events")?,
            retry_for: self.bounded_duration(
                retry_for.as_ref(),
                "notify.webhook.retry_for",
                DEFAULT_RETRY_FOR,
                Duration::ZERO,
                MAX_RETRY_FOR,
            )?,
            timeout: self.bounded_duration(
                timeout.as_ref(),
                "notify.webhook.timeout",
                DEFAULT_SEND_TIMEOUT,
                Duration::from_millis(100),
                Duration::from_secs(300),
            )?,
        })
    }

    fn mailbox(&self, item: &Spanned<String>, key: &str) -> Result<Mailbox, ConfigError> {
        item.value.trim().parse::<Mailbox>().map_err(|_| {
            self.error(
                item,
                key,
                format!(
                    "`{}` is not an email address (examples: ops@example.com, \"failoverd <failoverd@example.com>\")",
                    item.value
                ),
            )
        })
    }

    fn event_filter(
        &self,
        events: Option<&Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Result<EventFilter, ConfigError> {
        let Some(list) = events else {
            return Ok(EventFilter::ALL);
        };
        if list.value.is_empty() {
            return Err(self.error(
                list,
                key,
                format!(
                    "is empty; list some of {} or remove `events` to receive them all",
                    EventFilter::NAMES.join(", ")
                ),
            ));
        }
        let mut filter = EventFilter {
            check_down: false,
            check_up: false,
            answer_changed: false,
            publish_failed: false,
            override_changed: false,
        };
        for (i, name) in list.value.iter().enumerate() {
            let flag = match name.value.trim() {
                "check_down" => &mut filter.check_down,
                "check_up" => &mut filter.check_up,
                "answer_changed" => &mut filter.answer_changed,
                "publish_failed" => &mut filter.publish_failed,
                "override_changed" => &mut filter.override_changed,
                other => {
                    return Err(self.error(
                        name,
                        format!("{key}[{i}]"),
                        format!(
                            "`{other}` is not an event; use {}",
                            EventFilter::NAMES.join(", ")
                        ),
                    ));
                }
            };
            *flag = true;
        }
        Ok(filter)
    }

    fn bounded_duration(
        &self,
        value: Option<&Spanned<HumanDuration>>,
        key: &str,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = value else {
            return Ok(default);
        };
        if v.value.0 < min || v.value.0 > max {
            return Err(self.error(
                v,
                key,
                format!(
                    "{} is out of range; use {} to {}",
                    format_duration(v.value.0),
                    format_duration(min),
                    format_duration(max)
                ),
            ));
        }
        Ok(v.value.0)
    }
}

/// `https://chat.example.com:8443/…`: scheme, host and port only; paths and queries of webhook
/// URLs often carry the token.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let rest = if url.path() == "/" && url.query().is_none() {
        "/"
    } else {
        "/…"
    };
    format!(
        "{}://{}{port}{rest}",
        url.scheme(),
        url.host_str().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse;

    const BASE: &str = "zone: ha.example.com\nnodes: [{ id: node1, address: 127.0.59.1 }]\n\
        checks: [{ id: web, type: tcp, port: 80 }]\nhostnames: [{ name: ias, checks: [web] }]\n";

    fn with(notify: &str) -> Result<crate::config::Config, ConfigError> {
        parse(
            Path::new("/etc/failoverd/f.yaml"),
            &format!("{BASE}{notify}"),
        )
    }

    fn error(notify: &str) -> String {
        with(notify).unwrap_err().to_string()
    }

    #[test]
    fn defaults_fill_an_email_section_with_only_host_from_and_to() {
        let c = with("notify:\n  email:\n    smtp: { host: smtp.example.com }\n    from: a@example.com\n    to: [b@example.com]\n").unwrap();
        let e = c.notify.email.unwrap();
        assert_eq!((e.smtp.tls, e.smtp.port), (SmtpTls::Starttls, 587));
        assert_eq!(e.events, EventFilter::ALL);
        assert_eq!(e.digest_window, DEFAULT_DIGEST_WINDOW);
        assert_eq!(e.retry_for, DEFAULT_RETRY_FOR);
        assert!(c.notify.webhook.is_none());
        assert!(with("").unwrap().notify.is_empty());
    }

    #[test]
    fn errors_name_file_line_column_key_and_value() {
        let e = error(
            "notify:\n  email:\n    smtp: { host: h, tls: ssl }\n    from: a@example.com\n    to: [b@example.com]\n",
        );
        assert!(e.starts_with("/etc/failoverd/f.yaml:7:"), "{e}");
        assert!(
            e.contains("notify.email.smtp.tls: `ssl` is not one of none, starttls, tls"),
            "{e}"
        );
        let e = error(
            "notify:\n  email:\n    smtp: { host: h }\n    from: a@example.com\n    to: [b@example.com]\n    events: [check_down, answer_change]\n",
        );
        assert!(
            e.contains(":10:")
                && e.contains("notify.email.events[1]: `answer_change` is not an event"),
            "{e}"
        );
        let e = error(
            "notify:\n  email:\n    smtp: { host: h }\n    from: not an address\n    to: [b@example.com]\n",
        );
        assert!(
            e.contains(":8:")
                && e.contains("notify.email.from: `not an address` is not an email address"),
            "{e}"
        );
        let e = error(
            "notify:\n  email:\n    smtp: { host: h }\n    from: a@example.com\n    to: []\n",
        );
        assert!(e.contains("notify.email.to: is empty"), "{e}");
        let e = error("notify:\n  webhook:\n    url: ftp://x\n");
        assert!(
            e.contains(":7:")
                && e.contains("notify.webhook.url: `ftp://x` is not an http:// or https:// URL"),
            "{e}"
        );
        let e = error(
            "notify:\n  email:\n    smtp: { host: h, passwd_env: X }\n    from: a@example.com\n    to: [b@example.com]\n",
        );
        assert!(e.contains("passwd_env"), "unknown keys are refused: {e}");
    }

    #[test]
    fn credentials_need_each_other_and_encryption_off_loopback() {
        let e = error(
            "notify:\n  email:\n    smtp: { host: h, username: u }\n    from: a@example.com\n    to: [b@example.com]\n",
        );
        assert!(e.contains("user `u` needs a password"), "{e}");
        let e = error(
            "notify:\n  email:\n    smtp: { host: h, password_env: P }\n    from: a@example.com\n    to: [b@example.com]\n",
        );
        assert!(e.contains("a password needs a username"), "{e}");
        let e = error(
            "notify:\n  email:\n    smtp: { host: smtp.example.com, tls: none, username: u, password_env: P }\n    from: a@example.com\n    to: [b@example.com]\n",
        );
        assert!(e.contains("clear text"), "{e}");
        let ok = with("notify:\n  email:\n    smtp: { host: 127.0.0.1, tls: none, username: u, password_file: pw }\n    from: a@example.com\n    to: [b@example.com]\n").unwrap();
        let source = ok.notify.email.unwrap().smtp.password.unwrap();
        assert_eq!(
            source.kind,
            SecretKind::File("/etc/failoverd/pw".into()),
            "relative to the config file"
        );
    }

    #[test]
    fn secrets_resolve_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let source = SecretSource {
            kind: SecretKind::File(dir.path().join("pw")),
            file: "f.yaml".into(),
            location: Some((3, 5)),
            key: "notify.email.smtp.password_file".into(),
        };
        let secret = source.resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret", "trailing newline removed");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let missing = SecretSource {
            kind: SecretKind::File(dir.path().join("nope")),
            ..source
        };
        let e = missing.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with(
                "f.yaml:3:5: notify.email.smtp.password_file: cannot read the password file"
            ),
            "{e}"
        );
    }
}
