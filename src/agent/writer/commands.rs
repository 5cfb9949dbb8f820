//! Operators' commands to the writer (overrides set on the dashboard, failed notifications),
//! and the storage of the overrides.

use tracing::{error, info};

use super::Writer;
use crate::command::Command;
use crate::events::EventKind;
use crate::overrides;

impl Writer {
    /// Applies one command; an override only once it is stored, and the requester told.
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Override { request, reply } => {
                let config = self.config.clone();
                let origin = config
                    .self_id()
                    .map_or_else(|| overrides::LOCAL_ORIGIN.into(), String::from);
                // Applied only once stored: an override that would not survive a restart is
                // refused, and the operator told why.
                let mut next = self.overrides.clone();
                let result = next
                    .apply(request, &config, &origin, overrides::unix_now())
                    .map_err(overrides::Refused::Invalid)
                    .and_then(|entry| match next.store(self.state.path()) {
                        Ok(()) => Ok(entry),
                        Err(e) => Err(overrides::Refused::NotStored(format!(
                            "cannot store the override in {}: {e}; not applied (free space or fix the permissions, then try again)",
                            self.state.path().display()
                        ))),
                    });
                match &result {
                    Ok(entry) => {
                        info!(change = %entry.summary(), version = entry.version, "override set");
                        self.overrides = next;
                        self.emit(EventKind::OverrideChanged {
                            summary: entry.summary(),
                        });
                        self.overrides_changed = true;
                        self.status.overrides = self.overrides.list();
                        self.status_dirty = true;
                    }
                    Err(overrides::Refused::NotStored(error)) => {
                        error!(%error, "override refused");
                        self.emit(EventKind::PublishFailed {
                            error: error.clone(),
                        });
                    }
                    Err(overrides::Refused::Invalid(_)) => {}
                }
                let _ = reply.send(result);
            }
            Command::NotificationFailed { summary } => {
                self.emit(EventKind::NotificationFailed { summary });
                self.status_dirty = true;
            }
            Command::PublishFailed { error } => {
                self.emit(EventKind::PublishFailed { error });
                self.status_dirty = true;
            }
        }
    }

    /// Persists the overrides after a change and shows them; a failure is reported, not fatal.
    pub(super) fn overrides_stored(&mut self) {
        self.overrides_changed = true;
        self.status.overrides = self.overrides.list();
        self.status_dirty = true;
        if let Err(e) = self.overrides.store(self.state.path()) {
            error!(error = %e, state_dir = %self.state.path().display(), "cannot store the overrides; they hold until the agent stops");
            let error = format!(
                "cannot store the overrides in {}: {e}",
                self.state.path().display()
            );
            self.emit(EventKind::PublishFailed { error });
        }
    }
}
