//! Email over SMTP with lettre: one transport per agent, one connection per message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::DeliveryError;
use super::message::Mail;
use crate::check::{describe_error, no_roots_hint};
use crate::config::{ConfigError, EmailConfig, SmtpTls};

/// A ready SMTP sender: addresses and a transport holding the resolved password.
#[derive(Clone)]
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port`, for messages.
    server: String,
    /// One delivery attempt, connect to QUIT (`smtp.timeout`).
    attempt_limit: Duration,
}

/// What to do about the certificate errors operators meet (rustls names them tersely).
fn tls_hint(words: &str) -> &'static str {
    if words.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a CA this machine trusts: give that CA in notify.email.smtp.ca_file)"
    } else if words.contains("NotValidForName") {
        " (the server's certificate does not name notify.email.smtp.host: use the name it was issued for)"
    } else if words.contains("Expired") {
        " (the server's certificate has expired)"
    } else {
        ""
    }
}

impl EmailSender {
    /// Reads the password (env or file) and builds the transport; nothing is sent yet.
    pub fn new(config: &EmailConfig, config_file: &str) -> Result<Self, ConfigError> {
        let smtp = &config.smtp;
        let setup_error = |message: String| ConfigError {
            file: config_file.to_string(),
            location: None,
            key: "notify.email.smtp".into(),
            message,
            snippet: None,
        };
        let tls = |host: &str| {
            let mut parameters = TlsParameters::builder(host.to_string());
            if let Some(ca) = &smtp.ca {
                parameters = parameters.add_root_certificate(ca.certificate()?);
            }
            parameters.build().map_err(|e| {
                let words = describe_error(&e);
                let hint = no_roots_hint(&words);
                let or = if hint.is_empty() {
                    ""
                } else {
                    "; or give the server's CA in notify.email.smtp.ca_file"
                };
                setup_error(format!("cannot set up TLS for `{host}`: {words}{hint}{or}"))
            })
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .timeout(Some(smtp.timeout));
        builder = match smtp.tls {
            SmtpTls::None => builder.tls(Tls::None),
            // Required, not Opportunistic: a server that drops STARTTLS must not get the password.
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(&smtp.host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&smtp.host)?)),
        };
        if let (Some(user), Some(source)) = (&smtp.username, &smtp.password) {
            let password = source.resolve()?;
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().into()));
        }
        Ok(Self {
            transport: builder.build(),
            from: config.from.clone(),
            to: config.to.clone(),
            server: format!("{}:{}", smtp.host, smtp.port),
            attempt_limit: smtp.timeout,
        })
    }

    /// Where messages go, for logs: `ops@example.com via smtp.example.com:587`.
    pub fn describe(&self) -> String {
        let to: Vec<String> = self.to.iter().map(|m| m.email.to_string()).collect();
        format!("{} via {}", to.join(", "), self.server)
    }

    /// One delivery attempt.
    pub async fn send(&self, mail: &Mail) -> Result<(), DeliveryError> {
        let message = self.build(mail)?;
        // lettre's own timeout bounds only the TCP connect; a server that accepts and then
        // stalls (or never answers a failed AUTH) would hold this channel forever.
        let Ok(sent) = tokio::time::timeout(self.attempt_limit, self.transport.send(message)).await
        else {
            return Err(DeliveryError {
                message: format!(
                    "SMTP {}: no complete answer within {} (the server accepted the connection, then stalled)",
                    self.server,
                    crate::config::format_duration(self.attempt_limit)
                ),
                permanent: false,
            });
        };
        sent.map(|_| ()).map_err(|e| {
            // A 5xx answer (bad recipient, bad password) will not get better by retrying.
            let permanent = e.is_permanent();
            let words = describe_error(&e);
            DeliveryError {
                message: format!("SMTP {}: {words}{}", self.server, tls_hint(&words)),
                permanent,
            }
        })
    }

    fn build(&self, mail: &Mail) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .date_now()
            .message_id(Some(self.message_id()))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder.body(mail.body.clone()).map_err(|e| DeliveryError {
            message: format!("cannot build the message: {e}"),
            permanent: true,
        })
    }

    /// `<time.random@sender-domain>`: unique, and from a domain the sender owns (RFC 5322 3.6.4).
    fn message_id(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!(
            "<{nanos:x}.{:016x}.failoverd@{}>",
            rand::random::<u64>(),
            self.from.email.domain()
        )
    }
}
