//! The generic webhook: one JSON POST per event, for chat tools and incident systems.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::DeliveryError;
use crate::check::{describe_error, no_roots_hint};
use crate::config::{ConfigError, WebhookConfig, redacted_url};

#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
}

impl WebhookSender {
    pub fn new(config: &WebhookConfig, config_file: &str) -> Result<Self, ConfigError> {
        let error = |message: String| ConfigError {
            file: config_file.to_string(),
            location: None,
            key: "notify.webhook".into(),
            message,
            snippet: None,
        };
        // reqwest is built without a default crypto provider: use ring, once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            // Validated with the config; checked again rather than trusted with an unwrap.
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| error(format!("`{name}` is not a valid HTTP header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| error(format!("the value of header `{name}` is not valid")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("failoverd/", env!("CARGO_PKG_VERSION")));
        // A chat service outside usually needs the site's $HTTPS_PROXY; a receiver on this
        // machine never does, and a proxy could not reach our loopback anyway.
        let host = config.url.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            builder = builder.no_proxy();
        }
        if config.url.scheme() == "http" {
            // No TLS: no CA roots, so a machine without ca-certificates builds it.
            builder = builder.tls_certs_only([]);
        }
        let client = builder.build().map_err(|e| {
            let words = describe_error(&e);
            error(format!(
                "cannot set up the HTTP client: {words}{}",
                no_roots_hint(&words)
            ))
        })?;
        Ok(Self {
            client,
            url: config.url.clone(),
            headers,
        })
    }

    /// The URL without path or query (they may hold a token), for logs.
    pub fn describe(&self) -> String {
        redacted_url(&self.url)
    }

    /// One POST; 2xx is success.
    pub async fn send(&self, body: &serde_json::Value) -> Result<(), DeliveryError> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| DeliveryError {
                message: format!("webhook {}: {}", self.describe(), describe_error(&e)),
                permanent: false,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        Err(DeliveryError {
            message: format!("webhook {}: HTTP {status}", self.describe()),
            // 4xx means the request is wrong and stays wrong, except "try later" answers.
            permanent: status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429,
        })
    }
}
