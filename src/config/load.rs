//! The only ways to get a `Config`: `load` a file, or `parse` text (then validate either way).

use std::path::Path;

use super::Validator;
use super::file::ConfigFile;
use super::{Config, ConfigError, find_self};

/// Default place of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/failoverd/config.yaml";

/// Reads, parses and validates a configuration file, then finds which node this machine is
/// ([`find_self`]), after reading the files it names ([`read_files`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        location: None,
        key: String::new(),
        message: format!("cannot read the configuration file: {e} (pass --config FILE)"),
        snippet: None,
    })?;
    find_self(read_files(parse(path, &text)?)?)
}

/// Reads and checks the files the configuration names and that must be right before the agent
/// starts (`notify.email.smtp.ca_file`); a password file is read only when the agent starts.
pub fn read_files(mut config: Config) -> Result<Config, ConfigError> {
    if let Some(ca) = config
        .notify
        .email
        .as_mut()
        .and_then(|e| e.smtp.ca.as_mut())
    {
        ca.certificate = Some(ca.read()?);
    }
    Ok(config)
}

/// Parses and validates configuration text; `path` is used in messages only (and the relative
/// paths of `password_file` and `ca_file` are read from its directory).
///
/// Reads no file ([`read_files`] does) and no address of this machine: without `self:`, `self_node` is `None` and `self_source`
/// is [`SelfSource::NotLooked`](super::SelfSource::NotLooked) until [`find_self`] runs.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file_name = path.display().to_string();
    let mut key = String::new();
    let parsed: Result<ConfigFile, _> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key = e.path().to_string();
            e.into_inner()
        })
    });
    let raw = parsed.map_err(|e| ConfigError::from_yaml(&file_name, &key, e))?;
    Validator {
        file: file_name,
        text,
    }
    .validate(path, raw)
}
