//! `dashboard:`: where the page and the API listen, and how often the page refreshes.

use std::net::SocketAddr;
use std::time::Duration;

use super::ConfigError;
use super::file::DashboardSection;
use super::validate::Validator;

/// The range of `dashboard.refresh`: the page's `<meta refresh>` counts whole seconds.
pub const REFRESH_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));

#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    pub refresh: Duration,
}

impl Validator<'_> {
    pub(super) fn dashboard(
        &self,
        dashboard: DashboardSection,
    ) -> Result<DashboardConfig, ConfigError> {
        let DashboardSection { listen, refresh } = dashboard;
        let listen = match listen {
            Some(l) => self.socket_addr(&l, "dashboard.listen")?,
            None => "127.0.0.1:81".parse().expect("valid default"),
        };
        Ok(DashboardConfig {
            listen,
            refresh: refresh
                .map(|d| d.value.0)
                .unwrap_or(Duration::from_secs(60)),
        })
    }
}
