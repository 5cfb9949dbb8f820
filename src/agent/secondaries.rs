//! The `secondaries:` section made runnable: the key read from its variable, at start and at
//! each reload (a reload whose key cannot be read is refused as a whole).

use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::dns::{Secondaries, SecondaryCounters};

/// What the DNS server and the NOTIFY task need for `config`; `None` without `secondaries:`
/// and on a witness.
/// `counters` are the ones `/metrics` reads (`Published::secondaries`), kept across reloads.
pub(super) fn resolve(
    config: &Config,
    counters: &Arc<SecondaryCounters>,
) -> Result<Option<Arc<Secondaries>>, ConfigError> {
    let Some(section) = &config.secondaries else {
        return Ok(None);
    };
    // A witness is no primary of the secondaries (it is not a nameserver of the zone): it
    // sends them no NOTIFY and answers no transfer; the nodes do.
    if config.self_witness.is_some() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Secondaries {
        config: section.clone(),
        signer: section.tsig.signer()?,
        counters: counters.clone(),
    })))
}
